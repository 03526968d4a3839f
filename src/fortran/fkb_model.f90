!! A model as the file formats see it: precision, input width, the chain of layers with their
!! tensors, and metadata. The readers build one layer at a time with `add_layer`, which
!! creates, configures and validates it; the writers and `describe` walk it back.
module fkb_model
  use iso_fortran_env, only: int64
  use fkb_errors, only: FKB_OK, FKB_ERR_FORMAT, FKB_ERR_UNSUPPORTED, set_error
  use fkb_config, only: fkb_config_t, percent_encode, int_text
  use fkb_tensor, only: FKB_FLOAT32, dtype_name
  use fkb_layer, only: fkb_layer_t
  use fkb_layer_registry, only: new_layer
  use fkb_blas, only: BLAS_INT_MAX
  use fkb_text, only: string_t
  use fkb_optimizer, only: slot_t
  implicit none
  private
  public :: fkb_model_t, layer_box, meta_item, train_record_t

  type :: layer_box
    class(fkb_layer_t), allocatable :: l
  end type layer_box

  type :: meta_item
    character(len=:), allocatable :: key, value
  end type meta_item

  type :: train_record_t
    !! Training state as a file holds it: the compiled optimizer and loss specs, the step
    !! count and counters, and the optimizer's slot arrays (double precision, in order).
    character(len=:), allocatable :: optimizer, loss, state
    type(string_t), allocatable :: slot_names(:)
    type(slot_t), allocatable :: slots(:)
  end type train_record_t

  type :: fkb_model_t
    integer :: dtype = FKB_FLOAT32
    integer(int64) :: n_in = 0
    integer :: n_layers = 0
    type(layer_box), allocatable :: layers(:)
    type(meta_item), allocatable :: meta(:)
    type(train_record_t), allocatable :: train   !! read from a file, until the network takes it
  contains
    procedure :: n_out => model_n_out
    procedure :: add_layer => model_add_layer
    procedure :: set_meta => model_set_meta
    procedure :: get_meta => model_get_meta
    procedure :: header => model_header
    procedure :: prepare => model_prepare
  end type fkb_model_t

contains

  pure integer(int64) function model_n_out(self)
    class(fkb_model_t), intent(in) :: self
    if (self%n_layers > 0) then
      model_n_out = self%layers(self%n_layers)%l%n_out
    else
      model_n_out = self%n_in
    end if
  end function model_n_out

  subroutine model_add_layer(self, type_name, name, cfg, stat, msg)
    !! Appends a layer of the given type, configured from cfg (every option must be used).
    class(fkb_model_t), intent(inout) :: self
    character(len=*), intent(in) :: type_name, name
    type(fkb_config_t), intent(inout) :: cfg
    integer, intent(out) :: stat
    character(len=:), allocatable, intent(inout) :: msg
    type(layer_box), allocatable :: grown(:)
    class(fkb_layer_t), allocatable :: layer
    character(len=:), allocatable :: unused
    cfg%where = "layer '" // name // "' (" // type_name // ")"
    call new_layer(type_name, layer, stat, msg)
    if (stat /= FKB_OK) then
      msg = msg // " for layer '" // name // "'"
      return
    end if
    layer%name = name
    layer%dtype = self%dtype
    layer%n_in = self%n_out()
    call cfg%get_bool('trainable', layer%trainable, stat, msg, default=.true.)
    if (stat /= FKB_OK) return
    call layer%configure(cfg, stat, msg)
    if (stat /= FKB_OK) return
    unused = cfg%unused_key()
    if (len(unused) > 0) then
      call set_error(stat, msg, FKB_ERR_UNSUPPORTED, cfg%where // ": unknown option '" // &
                     unused // "'")
      return
    end if
    if (layer%n_out < 1 .or. layer%n_out > BLAS_INT_MAX) then
      call set_error(stat, msg, FKB_ERR_FORMAT, cfg%where // ': output width out of range')
      return
    end if
    if (.not. allocated(self%layers)) allocate(self%layers(4))
    if (self%n_layers == size(self%layers)) then
      allocate(grown(2 * self%n_layers))
      grown(1:self%n_layers) = self%layers(1:self%n_layers)   ! deep copies, done at load only
      call move_alloc(grown, self%layers)
    end if
    self%n_layers = self%n_layers + 1
    call move_alloc(layer, self%layers(self%n_layers)%l)
  end subroutine model_add_layer

  subroutine model_set_meta(self, key, value)
    class(fkb_model_t), intent(inout) :: self
    character(len=*), intent(in) :: key, value
    integer :: i
    if (.not. allocated(self%meta)) allocate(self%meta(0))
    do i = 1, size(self%meta)
      if (self%meta(i)%key == key) then
        self%meta(i)%value = value
        return
      end if
    end do
    self%meta = [self%meta, meta_item(key, value)]
  end subroutine model_set_meta

  function model_get_meta(self, key) result(value)
    !! The metadata value of key, or '' if absent.
    class(fkb_model_t), intent(in) :: self
    character(len=*), intent(in) :: key
    character(len=:), allocatable :: value
    integer :: i
    value = ''
    if (.not. allocated(self%meta)) return
    do i = 1, size(self%meta)
      if (self%meta(i)%key == key) value = self%meta(i)%value
    end do
  end function model_get_meta

  subroutine model_prepare(self, stat, msg)
    !! Lets every layer derive its constants from its tensors.
    class(fkb_model_t), intent(inout) :: self
    integer, intent(out) :: stat
    character(len=:), allocatable, intent(inout) :: msg
    integer :: i
    stat = FKB_OK
    do i = 1, self%n_layers
      call self%layers(i)%l%prepare(stat, msg)
      if (stat /= FKB_OK) return
    end do
  end subroutine model_prepare

  function model_header(self, train) result(text)
    !! The header text of the `.fkb` file of this model (docs/format.md), with the training
    !! records if `train` is given.
    class(fkb_model_t), intent(in) :: self
    type(train_record_t), intent(in), optional :: train
    character(len=:), allocatable :: text
    character, parameter :: nl = new_line('a')
    type(fkb_config_t) :: cfg
    integer :: i, k
    text = 'fkb-model' // nl // 'dtype ' // dtype_name(self%dtype) // nl // &
           'input ' // int_text(self%n_in) // nl
    do i = 1, self%n_layers
      associate (l => self%layers(i)%l)
        cfg = fkb_config_t()
        call cfg%set('name', l%name)
        call l%options(cfg)
        if (.not. l%trainable) call cfg%set('trainable', '0')
        text = text // 'layer ' // l%type_name // cfg%to_text() // nl
        if (allocated(l%params)) then
          do k = 1, size(l%params)
            text = text // 'tensor ' // l%params(k)%name // ' ' // dtype_name(self%dtype) // &
                   ' ' // l%params(k)%shape_text() // nl
          end do
        end if
      end associate
    end do
    if (allocated(self%meta)) then
      do i = 1, size(self%meta)
        text = text // 'meta ' // percent_encode(self%meta(i)%key) // ' ' // &
               percent_encode(self%meta(i)%value) // nl
      end do
    end if
    if (present(train)) then
      text = text // 'optimizer ' // percent_encode(train%optimizer) // nl // 'loss ' // &
             percent_encode(train%loss) // nl // 'state ' // percent_encode(train%state) // nl
      do i = 1, size(train%slots)
        text = text // 'slot ' // train%slot_names(i)%s // ' float64 ' // &
               int_text(size(train%slots(i)%m, kind=int64)) // nl
      end do
    end if
    text = text // 'end' // nl
  end function model_header

end module fkb_model
